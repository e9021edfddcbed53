// Streaming max-pool, kernel = stride = K, NHWC, PE channels per word.
//
// One pass over the input: a row buffer of OW*CF words keeps the running maximum of the
// current output row; the word that completes a KxK window goes to the output register
// (max of buffer and input). Rows/columns beyond OH*K / OW*K are consumed and
// dropped (floor semantics). The input is accepted only on adv, so backpressure is exact.
//
// Latency: the output word of a window is in the output register 3 cycles after the input word
// that completes the window is accepted (2 read-modify-write stages + the output register); one
// word per cycle.
module codesign_maxpool #(
    parameter integer IH = 4,
    parameter integer IW = 4,
    parameter integer C = 1,
    parameter integer PE = 1,
    parameter integer K = 2,
    parameter integer BITS = 8,
    parameter integer SIGNED = 0,
    parameter integer OH = IH / K,
    parameter integer OW = IW / K,
    parameter integer CF = C / PE,
    parameter integer WW = PE * BITS
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
    localparam integer BD = OW * CF;
    localparam integer BAW = (BD > 1) ? $clog2(BD) : 1;

    // no_rw_check: a read in the cycle its address is written is never used (the forwarding
    // below takes the written word instead), so Yosys need not build a read-during-write bypass
    (* no_rw_check *)
    reg [WW-1:0] rowbuf [0:BD-1];
    reg [15:0] cf, col, kx, row, ky;
    reg [BAW-1:0] bidx;      // ox*CF + cf
    reg [BAW-1:0] bbase;     // ox*CF

    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && in0_V_TVALID;
    assign in0_V_TREADY = adv;

    wire in_win = (row < OH * K) && (col < OW * K);
    wire first = (ky == 0) && (kx == 0);
    wire last = (ky == K - 1) && (kx == K - 1);

    function automatic [WW-1:0] vmax(input [WW-1:0] a, input [WW-1:0] b);
        integer i;
        reg [BITS-1:0] ea, eb;
        reg gt;
        begin
            for (i = 0; i < PE; i = i + 1) begin
                ea = a[i*BITS +: BITS];
                eb = b[i*BITS +: BITS];
                if (SIGNED != 0) gt = $signed(ea) > $signed(eb);
                else gt = ea > eb;
                vmax[i*BITS +: BITS] = gt ? ea : eb;
            end
        end
    endfunction

    // Pipelined read-modify-write of the row buffer (timing: a block-RAM output never feeds the
    // compare directly): S1 = word + synchronous read, S2 = read data registered, then the max
    // is computed and written back / sent to the output register on the next adv. A read misses
    // at most the two writes of the two adv edges after it, so the word in S2 takes the running
    // maximum from the newest of the last two writes to its address, else from the buffer.
    reg [WW-1:0] rd1, rd2, x1, x2;
    reg [BAW-1:0] b1, b2;
    reg v1, v2, f1, f2, l1, l2;
    reg [WW-1:0] wd_a, wd_b;           // last two written words (a newest)
    reg [BAW-1:0] wa_a, wa_b;
    reg wv_a, wv_b;
    // forwarding selects for the word in S2, registered when it moves there (an address compare
    // feeding a WW-bit select was the wide pool's critical path: 95.8 MHz at PE 64)
    reg hit_a, hit_b;
    wire [WW-1:0] old2 = hit_a ? wd_a : (hit_b ? wd_b : rd2);
    wire [WW-1:0] newmax = f2 ? x2 : vmax(old2, x2);
    wire wr = adv && v2;

    always @(posedge ap_clk) begin
        if (adv) begin
            rd1 <= rowbuf[bidx];
            x1 <= in0_V_TDATA; b1 <= bidx; f1 <= first; l1 <= last;
            rd2 <= rd1; x2 <= x1; b2 <= b1; f2 <= f1; l2 <= l1;
            // wa_a/wa_b as they are after this edge (a write moves a -> b and puts b2 in a)
            hit_a <= wr ? (b2 == b1) : (wv_a && wa_a == b1);
            hit_b <= wr ? (wv_a && wa_a == b1) : (wv_b && wa_b == b1);
            out_V_TDATA <= newmax;
        end
        if (wr) begin
            rowbuf[b2] <= newmax;
            wd_a <= newmax; wa_a <= b2;
            wd_b <= wd_a; wa_b <= wa_a;
        end
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            v1 <= 1'b0; v2 <= 1'b0; wv_a <= 1'b0; wv_b <= 1'b0;
        end else begin
            if (adv) begin
                v1 <= fire && in_win;
                v2 <= v1;
            end
            if (wr) begin
                wv_a <= 1'b1; wv_b <= wv_a;
            end
        end
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            cf <= 0; col <= 0; kx <= 0; row <= 0; ky <= 0; bidx <= 0; bbase <= 0;
            out_V_TVALID <= 1'b0;
        end else begin
            if (adv) out_V_TVALID <= v2 && l2;
            if (fire) begin
                if (cf == CF - 1) begin
                    cf <= 0;
                    if (col == IW - 1) begin
                        col <= 0; kx <= 0; bidx <= 0; bbase <= 0;
                        if (row == IH - 1) begin
                            row <= 0; ky <= 0;
                        end else begin
                            row <= row + 1'b1;
                            ky <= (ky == K - 1) ? 16'd0 : ky + 1'b1;
                        end
                    end else begin
                        col <= col + 1'b1;
                        if (kx == K - 1) begin
                            kx <= 0;
                            bidx <= bbase + CF;
                            bbase <= bbase + CF;
                        end else begin
                            kx <= kx + 1'b1;
                            bidx <= bbase;
                        end
                    end
                end else begin
                    cf <= cf + 1'b1;
                    bidx <= bidx + 1'b1;
                end
            end
        end
    end
endmodule
