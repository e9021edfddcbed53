// Streaming FIFO (identity), DEPTH words of WIDTH bits.
//
// Circular buffer with an asynchronous read (LUTRAM-friendly; first word falls through).
// in0_V_TREADY = not full and out_V_TVALID = not empty come from registers only, so a FIFO
// also cuts the combinational ready chain between the modules it separates.
//
// Latency: 1 cycle (a word written at t can leave at t + 1); DEPTH words of buffering.
module codesign_fifo #(
    parameter integer DEPTH = 2,
    parameter integer WIDTH = 8
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [WIDTH-1:0] in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output wire [WIDTH-1:0] out_V_TDATA,
    output wire             out_V_TVALID,
    input  wire             out_V_TREADY
);
    localparam integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer CW = $clog2(DEPTH + 1);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [AW-1:0] rd, wr;
    reg [CW-1:0] cnt;
    assign in0_V_TREADY = (cnt != DEPTH);
    assign out_V_TVALID = (cnt != 0);
    assign out_V_TDATA = mem[rd];
    wire in_fire = in0_V_TREADY && in0_V_TVALID;
    wire out_fire = out_V_TVALID && out_V_TREADY;

    always @(posedge ap_clk) begin
        if (in_fire) mem[wr] <= in0_V_TDATA;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            rd <= 0; wr <= 0; cnt <= 0;
        end else begin
            if (in_fire) wr <= (wr == DEPTH - 1) ? {AW{1'b0}} : wr + 1'b1;
            if (out_fire) rd <= (rd == DEPTH - 1) ? {AW{1'b0}} : rd + 1'b1;
            cnt <= cnt + (in_fire ? 1'b1 : 1'b0) - (out_fire ? 1'b1 : 1'b0);
        end
    end
endmodule
