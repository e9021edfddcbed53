// Constant padding of an NHWC feature map, SIMD channels per word.
//
// Walks the padded output (OH, OW, CF) one word per cycle: inside the image it forwards an
// input word (and only then asserts in0_V_TREADY), on the border it emits PADV in every lane
// (0 for a conv; the datatype's minimum for a max pool: the same one LUT level per bit). The output
// register advances only on adv, so a stalled consumer stalls the walk.
//
// Latency: 1 cycle (an input word accepted at t leaves at t + 1); the paths are one compare
// level on 16-bit counters (no deeper pipeline needed for 100 MHz on ECP5).
module codesign_fmpadding #(
    parameter integer IH = 4,
    parameter integer IW = 4,
    parameter integer C = 1,
    parameter integer SIMD = 1,
    parameter integer PT = 1,
    parameter integer PL = 1,
    parameter integer PB = 1,
    parameter integer PR = 1,
    parameter integer BITS = 8,
    parameter integer PADV = 0,
    parameter integer OH = IH + PT + PB,
    parameter integer OW = IW + PL + PR,
    parameter integer CF = C / SIMD,
    parameter integer WW = SIMD * BITS
) (
    input  wire          ap_clk,
    input  wire          ap_rst_n,
    input  wire [WW-1:0] in0_V_TDATA,
    input  wire          in0_V_TVALID,
    output wire          in0_V_TREADY,
    output reg  [WW-1:0] out_V_TDATA,
    output reg           out_V_TVALID,
    input  wire          out_V_TREADY
);
    reg [15:0] oy, ox, cf;
    wire in_img = (oy >= PT) && (oy < PT + IH) && (ox >= PL) && (ox < PL + IW);
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire go = adv && (!in_img || in0_V_TVALID);
    assign in0_V_TREADY = adv && in_img;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            oy <= 0; ox <= 0; cf <= 0;
            out_V_TVALID <= 1'b0;
        end else begin
            if (adv) out_V_TVALID <= go;
            if (go) begin
                if (cf == CF - 1) begin
                    cf <= 0;
                    if (ox == OW - 1) begin
                        ox <= 0;
                        oy <= (oy == OH - 1) ? 16'd0 : oy + 1'b1;
                    end else begin
                        ox <= ox + 1'b1;
                    end
                end else begin
                    cf <= cf + 1'b1;
                end
            end
        end
    end

    always @(posedge ap_clk) begin
        if (adv) out_V_TDATA <= in_img ? in0_V_TDATA : {SIMD{PADV[BITS-1:0]}};
    end
endmodule
